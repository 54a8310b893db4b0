"""The phantom world: synthetic chest films whose truth is known, reports by a simulated radiologist.

Modules: ``config`` (phantom.yaml, prevalence), ``study`` (one study and the world model's primitives),
``render`` (the film renderer), ``radiologist`` (the report writer and its checks), ``world`` (simulation,
splits, the world folder). The stage function is :func:`make_phantom` (``repgls.phantom``).
"""

from repgls.data.phantom.config import PREVALENCE_MODES, load_config, resolve_prevalence
from repgls.data.phantom.radiologist import (
    CHANGE_OF_PRIOR,
    SIDE_WORD,
    belief_tables,
    dictate,
    hedge_calibration,
    miner_agreement,
    report_text,
)
from repgls.data.phantom.study import Study
from repgls.data.phantom.world import (
    PRIOR_STATES,
    make_phantom,
    patient_splits,
    render_study,
    simulate,
    truth_frame,
    truth_labels,
)

__all__ = ["CHANGE_OF_PRIOR", "PREVALENCE_MODES", "PRIOR_STATES", "SIDE_WORD", "Study", "belief_tables", "dictate",
           "hedge_calibration", "load_config", "make_phantom", "miner_agreement", "patient_splits", "render_study",
           "report_text", "resolve_prevalence", "simulate", "truth_frame", "truth_labels"]
