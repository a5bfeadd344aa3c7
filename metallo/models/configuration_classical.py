"""Classical baseline configuration"""

from .configuration_common import MetalloConfig, check_positive_int

#: Default feature settings, shared with the classical branch of the deep models.
FEATURE_DEFAULTS = {"n_bands": 64, "histogram_bins": 16, "gradient_scales": (1, 2, 4), "dark_threshold": 0.5}
#: Candidate ridge penalties (1e-3 .. 1e3), chosen by leave-one-out cross-validation.
RIDGE_ALPHAS = tuple(10.0 ** (k / 2) for k in range(-6, 7))


class ClassicalConfig(MetalloConfig):
    r"""
    Configuration of a [`ClassicalModel`], the yardstick every deep model must beat: hand-made features a
    spectroscopist and a metallographer would try first, and ridge regression fitted in closed form.

    Spectra: each spectrum standard-normal-variate (SNV) normalised, averaged into `n_bands` bands, then the mean
    and the standard deviation of each band over the measurement grid. Image: the grey image scaled by its own
    maximum, a `histogram_bins`-bin histogram of it, its mean and standard deviation, the mean and standard
    deviation of its gradient magnitude at each of `gradient_scales`, and the fraction of pixels below
    `dark_threshold`. Features are standardised with training statistics; the ridge penalty is chosen from
    `ridge_alphas` by efficient leave-one-out cross-validation on the training split.

    Fields of [`MetalloConfig`] describe the data shape (`image_size` is the side the image statistics are
    computed at).

    Args:
        n_bands (`int`, *optional*, defaults to 64):
            Wavelength bands each SNV spectrum is averaged into (at most `spectrum_length`).
        histogram_bins (`int`, *optional*, defaults to 16):
            Bins of the grey-level histogram.
        gradient_scales (`list[int]`, *optional*, defaults to `[1, 2, 4]`):
            Downsampling factors at which gradient-magnitude statistics are taken.
        dark_threshold (`float`, *optional*, defaults to 0.5):
            Grey level (relative to the image's maximum) below which a pixel counts as dark.
        ridge_alphas (`list[float]`, *optional*, defaults to 13 values from 1e-3 to 1e3):
            Candidate ridge penalties.
    """

    model_type = "metallo_classical"

    def __init__(
        self,
        n_bands=FEATURE_DEFAULTS["n_bands"],
        histogram_bins=FEATURE_DEFAULTS["histogram_bins"],
        gradient_scales=FEATURE_DEFAULTS["gradient_scales"],
        dark_threshold=FEATURE_DEFAULTS["dark_threshold"],
        ridge_alphas=RIDGE_ALPHAS,
        **kwargs,
    ):
        self.n_bands = n_bands
        self.histogram_bins = histogram_bins
        self.gradient_scales = list(gradient_scales)
        self.dark_threshold = dark_threshold
        self.ridge_alphas = [float(a) for a in ridge_alphas]
        super().__init__(**kwargs)
        for field in ("n_bands", "histogram_bins"):
            check_positive_int(field, getattr(self, field))
        self.n_bands = min(self.n_bands, self.spectrum_length)
        for value in self.gradient_scales:
            check_positive_int("gradient_scales", value)
        if not 0.0 < dark_threshold < 1.0:
            raise ValueError(f"dark_threshold must be in (0, 1); got {dark_threshold!r}")
        if not self.ridge_alphas or min(self.ridge_alphas) <= 0:
            raise ValueError(f"ridge_alphas must be positive numbers; got {ridge_alphas!r}")

    @property
    def raw_inputs(self) -> bool:
        """The model normalises its inputs itself: images in [0, 1], spectra as measured."""
        return True

    @property
    def fitted_in_closed_form(self) -> bool:
        """Trained by :meth:`ClassicalModel.fit`, not by gradient descent."""
        return True


__all__ = ["FEATURE_DEFAULTS", "RIDGE_ALPHAS", "ClassicalConfig"]
