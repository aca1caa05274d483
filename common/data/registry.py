"""Name -> loader tables of the single-image (SPEC 2.5) and video (SPEC 2.3, 2.4) re-ID data sets.

Each loader takes the data root (the folder that holds ``market1501/``, ``msmt17/`` ...) and
returns :class:`common.data.base.ImageSplits`. The cross-modal sets (SYSU-MM01, RegDB) have
their own modules (:mod:`common.data.sysu`, :mod:`common.data.regdb`) because their splits
are per modality and per trial.
"""
from common.data.base import ImageSplits
from common.data.cuhk03 import load_cuhk03
from common.data.duke_video import load_dukevideo
from common.data.market1501 import load_dukemtmcreid, load_market1501
from common.data.mars import load_mars
from common.data.msmt17 import load_msmt17
from common.data.veri import load_veri
from common.data.video_base import VideoSplits
from common.errors import ReidError

IMAGE_DATASETS = {
    "market1501": load_market1501,
    "dukemtmcreid": load_dukemtmcreid,
    "msmt17": load_msmt17,
    "cuhk03": load_cuhk03,
}
# The video data sets (MARS, DukeMTMC-VideoReID, VeRi-776, SPEC 2.3-2.4) are in VIDEO_DATASETS
# below; their loaders take the dataset's own folder (the one holding bbox_train/, train/ or
# image_train/) and return common.data.video_base.VideoSplits.
VIDEO_DATASETS = {
    "mars": load_mars,
    "dukevideo": load_dukevideo,
    "veri": load_veri,
}


def load_image_dataset(name: str, root: str, **kwargs) -> ImageSplits:
    """Load image data set ``name`` (case-insensitive) from ``root`` (SPEC 2.5); extra keyword
    arguments go to the loader (e.g. ``labeled=False`` for CUHK03)."""
    key = str(name).lower()
    if key not in IMAGE_DATASETS:
        raise ReidError(f"unknown image dataset {name!r}; expected one of "
                        f"{', '.join(sorted(IMAGE_DATASETS))}")
    return IMAGE_DATASETS[key](root, **kwargs)


def load_video_dataset(name: str, root: str, **kwargs) -> VideoSplits:
    """Load video data set ``name`` (case-insensitive) from its folder ``root`` (SPEC 2.3,
    2.4); extra keyword arguments go to the loader (``augmented_gallery=`` for MARS and
    Duke-Video, ``protocol='I2V'|'V2V'|'I2I'|'V2I'`` for VeRi)."""
    key = str(name).lower()
    if key not in VIDEO_DATASETS:
        raise ReidError(f"unknown video dataset {name!r}; expected one of "
                        f"{', '.join(sorted(VIDEO_DATASETS))}")
    return VIDEO_DATASETS[key](root, **kwargs)
