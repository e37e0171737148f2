"""Novel-view target poses: lift 18-joint skeletons to 3D, estimate the view, rotate and project
back (docs/views.md)."""
from reid_aug.views.lift import LiftedPoses, lift_poses  # noqa: F401
from reid_aug.views.rotate import (  # noqa: F401
    VISIBILITY,
    RotatedPoses,
    fit_visibility_intervals,
    project,
    rotate_points,
    rotate_poses,
    visible_at,
)
from reid_aug.views.viewpoint import (  # noqa: F401
    VIEWS,
    estimate_views,
    view_count_shares,
    view_labels,
    view_table,
    views_per_identity,
    wrap_degrees,
)
