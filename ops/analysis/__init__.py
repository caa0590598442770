"""What the components mean: top examples, tunings, the similarity of two decompositions, and the
eigenvalue decay of a store's PEFs.

Section 3 of the NPEFF paper. The analyses of components work on the coefficient matrix ``W``
``[m, C]`` (of a decomposition, or fitted to held-out data by ``npeff fit``) and the store's
per-example table (text, label, prediction); only :mod:`spectrum` reads the PEF tensor, streamed.

Modules:
    coefficients: ``W`` checked, components chosen, raw non-zero counts and the effective support
        (coefficients above a fraction of their component's largest).
    fitted: coefficients written by ``npeff fit`` with the decomposition they were fitted with;
        :func:`open_analysable` opens either.
    source_store: a decomposition with the store it was computed from (checked to belong), its
        per-example columns and class names.
    matching: the examples of two stores matched by id.
    ranking: the top examples of each component (the largest coefficients).
    tuning: prediction-, label- and LnP-tuned components (Table 1).
    similarity: cosine matrix, similarity score, split map and the comparison of two decompositions
        (of one store, or of two stores over the same examples: Figure 2).
    methods: one comparison row per method (tunings and the tuning classifier), Table 1's layout.
    classifier: the tuning classifier of section 3.3 (components vote for the labels of their top examples).
    spectrum: the mean normalised eigenvalue decay of a store's PEFs (Figure 3).
"""

from npeff.ops.analysis.classifier import TuningClassifier, tuning_classifier
from npeff.ops.analysis.coefficients import (DEFAULT_SUPPORT_THRESHOLD, nonzero_counts, support_counts,
                                             support_mask)
from npeff.ops.analysis.fitted import FittedCoefficients, open_analysable, open_fitted
from npeff.ops.analysis.matching import example_ids, match_examples
from npeff.ops.analysis.methods import method_row
from npeff.ops.analysis.similarity import compare, cosine_matrix, similarity_score, split_map
from npeff.ops.analysis.ranking import top_examples, top_indices
from npeff.ops.analysis.source_store import check_belongs, example_columns, label_name, label_names, open_store_for
from npeff.ops.analysis.spectrum import Spectrum, pef_spectrum
from npeff.ops.analysis.tuning import TUNING_TOP, ComponentTuning, Tunings, compute_tunings, tunings

__all__ = ["DEFAULT_SUPPORT_THRESHOLD", "TUNING_TOP", "ComponentTuning", "FittedCoefficients", "Spectrum",
           "TuningClassifier", "Tunings", "check_belongs", "compare", "compute_tunings", "cosine_matrix",
           "example_columns", "example_ids", "label_name", "label_names", "match_examples", "method_row",
           "nonzero_counts", "open_analysable", "open_fitted", "open_store_for", "pef_spectrum", "similarity_score",
           "split_map", "support_counts", "support_mask", "top_examples", "top_indices", "tuning_classifier",
           "tunings"]
