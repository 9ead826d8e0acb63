"""The data path's fixed facts, a leaf module (no imports): `ffcv_inat.config` validates
`data.crop` and `data.decode` against CROPS and DECODES without importing torch or ffcv."""

# ImageNet's mean and std in levels of 255 (RGB), the normalisation every pretrained ResNet-50 expects.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# Evaluation crops the centre 224/256 of the image, the standard ImageNet protocol.
DEFAULT_CROP_RATIO = 224 / 256
# Who draws the training crops: "seeded" (crops.crop_box, a function of seed, epoch and sample)
# or "ffcv" (ffcv's decoder and flip, from numba's unseeded generator).
CROPS = ("seeded", "ffcv")
# Where JPEGs are decoded: in ffcv's CPU workers, on the GPU (nvJPEG), or gpu on CUDA and cpu otherwise.
DECODES = ("cpu", "gpu", "auto")
