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
    package_data={"lang_image.evaluators": ["prompts/*.txt"]},
    extras_require={
        # nbclient, nbformat, ipykernel: the notebook tests; jsonschema: the results' schema;
        # pytest-xdist: README's test command runs two workers.
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0",
                 "jsonschema==4.26.0", "wandb==0.31.0"],
        # Weights & Biases beside TensorBoard (config.wandb.enabled=True).
        "wandb": ["wandb==0.31.0"],
        # Running the notebooks in notebooks/ (Jupyter, and the kernel and client they use).
        "notebooks": ["jupyter==1.1.1", "notebook==7.6.5", "nbclient==0.11.0", "nbformat==5.11.1",
                      "ipykernel==7.4.0"],
        # Importing and exporting OpenAI / open_clip / Hugging Face CLIP weights
        # (lang_image/interop); torch 2.13.0 installs the CPU build here.
        "interop": ["torch==2.13.0", "transformers==5.23.0", "safetensors==0.8.0"],
        # Accelerators, with the same jax (pins from jax 0.10.2's own [tpu] and [cuda12]
        # extras; docs/accelerators.md). The default install above is the CPU jaxlib.
        "tpu": ["jax[tpu]==0.10.2", "libtpu==0.0.42.1"],
        "cuda12": ["jax[cuda12]==0.10.2", "jax-cuda12-plugin[with-cuda]==0.10.2",
                   "jax-cuda12-pjrt==0.10.2"],
        # gs:// workdirs: Orbax asks google-cloud-storage about the bucket (lang_image/storage.py).
        "gcs": ["google-cloud-storage==3.17.2"],
    },
)
