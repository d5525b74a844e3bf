"""Building blocks shared by the three networks, in plain Keras (no backend-specific code).

Arrays are (z, y, x, channels). Pooling halves z only while the patch still has depth to pool, so the
same code builds a network for 3D+time and for 2D+time (Z = 1, where kernels are flat: 1 × 3 × 3).
"""

from __future__ import annotations


def pool_plan(patch_depth: int, levels: int) -> list[tuple[int, int, int]]:
    """Pool sizes (z, y, x) for each level: always 2 in y and x; 2 in z while at least 4 slices remain."""
    plan = []
    depth = patch_depth
    for _ in range(levels):
        pool_z = 2 if depth >= 4 else 1
        plan.append((pool_z, 2, 2))
        depth //= pool_z
    return plan


def depths_per_level(patch_depth: int, plan: list[tuple[int, int, int]]) -> list[int]:
    depths = [patch_depth]
    for pool_z, _, _ in plan:
        depths.append(depths[-1] // pool_z)
    return depths


def conv_block(x, filters: int, depth: int, name: str):
    """Two 3 × 3 × 3 convolutions (1 × 3 × 3 where there is a single slice), batch norm, ReLU."""
    import keras

    kernel = (3 if depth > 1 else 1, 3, 3)
    for index in (1, 2):
        x = keras.layers.Conv3D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def tile_multiple(plan: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """Tiles given to a network with this pooling plan must be multiples of this (z, y, x)."""
    multiple = [1, 1, 1]
    for pool in plan:
        multiple = [m * p for m, p in zip(multiple, pool)]
    return tuple(multiple)  # type: ignore[return-value]
