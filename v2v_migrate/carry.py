"""The destination's schema from the source's: what a created destination will hold, what it cannot, and the
vectors it cannot hold at all, which the user must drop by name (--drop-vector) rather than lose silently.
Shared by plan, apply's pre-flight and the dry run."""
from __future__ import annotations

from connectors.schema import carry, extra_vectors
from v2v_migrate.errors import UsageError


def carry_to(source, dest, dim: int, metric: str, drop_vectors: tuple = ()) -> dict:
    """connectors.schema.carry(source's description -> dest's engine), with "source_schema" added.

    Refuses a --drop-vector name the source lacks, and vectors the destination cannot hold."""
    description = source.describe_schema()
    others = extra_vectors(description)
    unknown = sorted(set(drop_vectors) - set(others))
    if unknown:
        raise UsageError(f"--drop-vector {', '.join(unknown)}: the source has no such vector besides the migrated "
                         f"one (it has {', '.join(sorted(others)) or 'none'}).", "drop only vectors the source has.")
    out = carry(description, dest.flavor, dim=int(dim), metric=metric, drop_vectors=tuple(drop_vectors))
    if out["unholdable"]:
        names = out["unholdable"]
        kinds = ", ".join(f"{n} ({others[n]['kind']})" for n in names)
        raise UsageError(f"The source holds further vectors {kinds} that a {dest.flavor} destination cannot hold.",
                         f"pass {' '.join('--drop-vector ' + n for n in names)} to migrate without them, or write "
                         "to a Milvus or Qdrant destination, which keeps them.")
    out["source_schema"] = description
    return out


def check_existing(carried: dict, dest) -> None:
    """An existing destination must hold the vectors the rows carry (those not dropped)."""
    have = set(dest.describe_schema().get("vectors", {}))
    missing = sorted(n for n in carried["schema"]["vectors"] if n != carried["schema"]["vector"] and n not in have)
    if missing:
        raise UsageError(f"Destination {dest.uri} has no vector {', '.join(missing)} for the source's other vectors.",
                         f"pass {' '.join('--drop-vector ' + n for n in missing)}, or write to a new destination "
                         "(it is created with the source's schema).")
