"""What ``python -m data.download`` can fetch: every name, its address and where it goes.

The names are the public references' (Zhu et al. 2017, the CycleGAN reference's dataset and
pretrained-model scripts; PyTorch's examples/fast_neural_style; the CUT authors' (Park et al. 2020)
pretrained_models.tar), so a downloaded model sits where the reference puts it. The fetching
itself is :mod:`data.download`; ``test.py`` and the report read only this table, to find a
downloaded model by its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

DATASET_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{}.zip"
MODEL_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{}.pth"
FAST_NEURAL_STYLE_URL = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
FAST_NEURAL_STYLES = ("candy", "mosaic", "rain_princess", "udnie")  # saved_models/<style>.pth in the zip
CUT_URL = "http://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"
# Huang & Belongie's own Torch7 files, where pytorch-AdaIN's models/download_models.sh fetches them
ADAIN_FILES = (("https://s3.amazonaws.com/xunhuang-public/adain/vgg_normalised.t7", "vgg_normalised.t7"),
               ("https://s3.amazonaws.com/xunhuang-public/adain/decoder.t7", "decoder.t7"))
CUT_MODELS = {f"{d}_{m}_pretrained": f"{'FastCUT' if m == 'fastcut' else 'CUT'} generator (authors): {about}"
              for d, about in (("horse2zebra", "horse -> zebra"), ("cat2dog", "cat -> dog"),
                               ("cityscapes", "label map -> street photo")) for m in ("cut", "fastcut")}


class Entry(NamedTuple):
    """One downloadable thing. ``dest`` is relative to --output: a folder (dataset, bundle) or a file (generator)."""

    kind: str  # "dataset" (zip of trainA/ trainB/ testA/ testB/), "generator" (one .pth), "bundle" (zip of
    # .pth), "tar" (the CUT authors' tar of <name>/latest_net_G.pth)
    url: str | None  # None: not redistributed, --url is needed
    dest: str
    about: str
    max_bytes: int = 0  # what its zip may hold, unpacked (the expected size, with room); 0 = only the general limits
    files: tuple[tuple[str, str], ...] = ()  # "files": (address, file name) of each file, into the folder dest


# The reference's dataset zips hold 256 px JPEGs (maps: 600 px), at most about 8,300 of them
# (monet2photo); JPEGs do not shrink further in a zip, so a zip's content is about its own size,
# a few hundred MB. A zip of one of these names that declares more is not that dataset. cityscapes,
# which users build from the official files (--url), keeps only the general limits.
REFERENCE_DATASET_MAX = 4 * 2**30
BUNDLE_MAX = 256 * 2**20  # fast_neural_style's saved_models.zip: four 6.7 MB networks


DATASETS = {  # the reference's dataset names -> what they hold (A <-> B)
    "apple2orange": "ImageNet apples <-> oranges",
    "summer2winter_yosemite": "Yosemite in summer <-> in winter (Flickr)",
    "horse2zebra": "ImageNet horses <-> zebras",
    "monet2photo": "Monet paintings <-> landscape photos",
    "cezanne2photo": "Cezanne paintings <-> landscape photos",
    "ukiyoe2photo": "Ukiyo-e prints <-> landscape photos",
    "vangogh2photo": "Van Gogh paintings <-> landscape photos",
    "maps": "satellite photos <-> Google maps (paired, New York)",
    "cityscapes": "street photos <-> label maps (license: get it from cityscapes-dataset.com, pass --url)",
    "facades": "building facades <-> label maps (paired, CMP Facades)",
    "iphone2dslr_flower": "iPhone flower photos <-> DSLR ones with shallow depth of field",
    "ae_photos": "photos by Alexei Efros to try the style_* generators on (test split only)",
}
GENERATORS = {  # the reference's pretrained generator names -> what they translate
    "apple2orange": "apple -> orange", "orange2apple": "orange -> apple",
    "summer2winter_yosemite": "Yosemite summer -> winter", "winter2summer_yosemite": "Yosemite winter -> summer",
    "horse2zebra": "horse -> zebra", "zebra2horse": "zebra -> horse",
    "monet2photo": "Monet painting -> photo", "style_monet": "photo -> Monet painting",
    "style_cezanne": "photo -> Cezanne painting", "style_ukiyoe": "photo -> Ukiyo-e print",
    "style_vangogh": "photo -> Van Gogh painting",
    "sat2map": "satellite photo -> map", "map2sat": "map -> satellite photo",
    "cityscapes_photo2label": "street photo -> label map", "cityscapes_label2photo": "label map -> street photo",
    "facades_photo2label": "facade photo -> label map", "facades_label2photo": "label map -> facade photo",
    "iphone2dslr_flower": "iPhone flower photo -> DSLR look",
}
CYCLEGAN_MODELS = tuple(GENERATORS)


def _generator_key(model: str) -> str:
    return f"{model}_pretrained" if model in DATASETS else model  # a bare shared name stays the dataset


NAMES: dict[str, Entry] = {
    **{n: Entry("dataset", None, n, f"dataset: {a}") if n == "cityscapes" else
       Entry("dataset", DATASET_URL.format(n), n, f"dataset: {a}", REFERENCE_DATASET_MAX) for n, a in DATASETS.items()},
    **{_generator_key(n): Entry("generator", MODEL_URL.format(n), f"{n}_pretrained/latest_net_G.pth",
                                f"CycleGAN generator (reference): {a}") for n, a in GENERATORS.items()},
    "fast_neural_style": Entry("bundle", FAST_NEURAL_STYLE_URL, "fast_neural_style",
                               f"Johnson et al. 2016 networks (PyTorch examples): {', '.join(FAST_NEURAL_STYLES)}",
                               BUNDLE_MAX),
    "cut_pretrained": Entry("tar", CUT_URL, "", f"Park et al. 2020 CUT / FastCUT generators: {', '.join(CUT_MODELS)}"),
    "adain_pretrained": Entry("files", ADAIN_FILES[0][0], "adain_pretrained",
                              "Huang & Belongie 2017 AdaIN: their normalised VGG-19 and relu4_1 decoder (Torch7)",
                              files=ADAIN_FILES),
    "wct_pretrained": Entry("files", None, "wct_pretrained",
                            "Li et al. 2017 WCT: five encoder / decoder pairs (Torch7; the name says where they go)",
                            files=tuple((None, f"{kind}_conv{k}_1.t7") for kind in ("vgg_normalised",
                                                                                   "feature_invertor")
                                        for k in range(1, 6))),
}
# Other spellings that name the same entry: every generator as <name>_pretrained, each style its bundle.
ALIASES = {**{f"{n}_pretrained": _generator_key(n) for n in GENERATORS},
           **dict.fromkeys(FAST_NEURAL_STYLES, "fast_neural_style"), **dict.fromkeys(CUT_MODELS, "cut_pretrained")}


def pretrained_path(name: str, root: str | Path = "checkpoints") -> Path | None:
    """Where the weights file of a pretrained model name lives once downloaded (None: not a model name).

    CycleGAN reference names (``style_monet``, ``monet2photo`` or ``monet2photo_pretrained``) ->
    ``root/<name>_pretrained/latest_net_G.pth``; ``candy``, ``mosaic``, ``rain_princess``, ``udnie`` ->
    ``root/fast_neural_style/<name>.pth``; the CUT authors' ``horse2zebra_cut_pretrained`` ... ->
    ``root/<name>/latest_net_G.pth``.
    """
    model = name.removesuffix("_pretrained")
    if name in CUT_MODELS:
        return Path(root) / name / "latest_net_G.pth"
    if model in GENERATORS:
        return Path(root) / NAMES[_generator_key(model)].dest
    if name in FAST_NEURAL_STYLES:
        return Path(root) / NAMES["fast_neural_style"].dest / f"{name}.pth"
    if name in NAMES and NAMES[name].kind == "files":  # a released set: its folder
        return Path(root) / NAMES[name].dest
    return None


def find_pretrained(name: str, root: str | Path = "checkpoints") -> Path | None:
    """The downloaded weights file of a pretrained model name (:func:`pretrained_path`), or None when
    it is not there (or not a model name)."""
    path = pretrained_path(name, root)
    return path if path is not None and path.exists() else None


def listing() -> str:
    width = max(map(len, NAMES))
    lines = [f"{n:<{width}}  {e.about}" for n, e in NAMES.items()]
    lines.append(f"(also: every generator as <name>_pretrained; {', '.join(FAST_NEURAL_STYLES)} -> fast_neural_style; "
                 f"{', '.join(CUT_MODELS)} -> cut_pretrained)")
    return "\n".join(lines)
