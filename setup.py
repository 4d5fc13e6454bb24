"""lang_image: language-image pretraining objectives in one sharded JAX loop."""

import setuptools

# Pinned to a set that installs and imports cleanly together on Python 3.11 (CPU).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "chex==0.1.92",
    "einops==0.8.2",
    "ml-collections==1.1.0",
    "clu==0.0.12",
    "tensorflow-cpu==2.21.0",
    # clu's TensorBoard writer needs it; tensorflow 2.21 no longer pulls it in.
    "tensorboard==2.21.0",
    "tensorflow-datasets==4.9.10",
    # tfds needs it to build a custom dataset, but declares it only for old Pythons.
    "importlib_resources==7.1.0",
    "array-record==0.8.6",
    "grain==0.2.18",
    "sentencepiece==0.2.3",
    "numpy==2.4.6",
    "protobuf==7.36.2",
    "pillow==13.0.0",
    "matplotlib==3.11.2",
    "absl-py==2.5.1",
]

setuptools.setup(
    name="lang_image",
    version="0.1.0",
    description="Language-image pretraining (CLIP, SigLIP, nCLIP, xCLIP, RankCLIP, CLIP-Lite) in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["lang_image", "lang_image.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest==9.2.0"]},
)
