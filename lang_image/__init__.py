"""lang_image: language-image pretraining in JAX/Flax."""
