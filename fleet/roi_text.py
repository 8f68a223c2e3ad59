"""ROIs as people type them on a command line: `ID=x,y;x,y;x,y[@sensitivity]`, vertices in
normalised frame coordinates (0..1) of the reference view."""

from __future__ import annotations

from pydantic import ValidationError

from fleet.messages import RoiSpec, format_validation_error

FORMAT = "ID=x,y;x,y;x,y[@sensitivity], coordinates 0..1"


def parse_roi(text: str) -> RoiSpec:
    """One ROI; ValueError with the expected format if it is not one."""
    roi_id, sep, rest = text.partition("=")
    if not sep:
        raise ValueError(f"an ROI reads {FORMAT}; got {text!r}")
    points, _, sensitivity = rest.partition("@")
    try:
        polygon = [tuple(float(v) for v in p.split(",")) for p in points.split(";") if p.strip()]
        fields: dict[str, object] = {"id": roi_id.strip(), "polygon": polygon}
        if sensitivity:
            fields["sensitivity"] = float(sensitivity)
        return RoiSpec.model_validate(fields)
    except ValueError as exc:  # float() or a pydantic ValidationError
        detail = (
            "; ".join(format_validation_error(exc))
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise ValueError(f"bad ROI {text!r} ({FORMAT}): {detail}") from None


def format_roi(roi: RoiSpec) -> str:
    points = ";".join(f"{x:g},{y:g}" for x, y in roi.polygon)
    return f"{roi.id}={points}@{roi.sensitivity:g}"
