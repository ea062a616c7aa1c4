"""Models as data and their loading: the registry (models.yaml), variants (variants.yaml) planned before any load,
loading (dtype, attention, quantization, adapters, one GPU or sharded), the embedded Gemma 3 270M, random-init
models at published shapes, weights fingerprints and AWQ conversion."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "ModelSpec": "registry",
        "RegistryError": "registry",
        "load_registry": "registry",
        "resolve": "registry",
        "Variant": "variants",
        "VariantError": "variants",
        "load_variants": "variants",
        "checkpoint_path": "variants",
        "plan": "variants",
        "Loaded": "loading",
        "load": "loading",
        "pick_device": "loading",
        "base_weights": "loading",
        "materialize": "embedded",
        "fingerprint": "fingerprint",
        "RANDOM_MARKER": "shapes",
        "build_tiny": "tiny",
    },
)
