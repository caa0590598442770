"""What the components mean: top examples, tunings and the similarity of two decompositions.

Section 3 of the NPEFF paper. Everything here works on the coefficient matrix ``W`` ``[m, C]`` and
the store's per-example table (text, label, prediction); nothing reads the PEF tensor.

Modules:
    coefficients: ``W`` checked, components chosen, non-zero coefficients counted.
    source_store: a decomposition with the store it was computed from (checked to belong), its
        per-example columns and class names.
    ranking: the top examples of each component (the largest coefficients).
    tuning: prediction-, label- and LnP-tuned components (Table 1).
    similarity: cosine matrix, similarity score, split map and the comparison of two decompositions.
    methods: one comparison row per method (tunings and the tuning classifier), Table 1's layout.
    classifier: the tuning classifier of section 3.3 (components vote for the labels of their top examples).
"""

from npeff.ops.analysis.classifier import TuningClassifier, tuning_classifier
from npeff.ops.analysis.coefficients import nonzero_counts
from npeff.ops.analysis.methods import method_row
from npeff.ops.analysis.similarity import compare, cosine_matrix, similarity_score, split_map
from npeff.ops.analysis.ranking import top_examples, top_indices
from npeff.ops.analysis.source_store import check_belongs, example_columns, label_name, label_names, open_store_for
from npeff.ops.analysis.tuning import TUNING_TOP, ComponentTuning, Tunings, compute_tunings, tunings

__all__ = ["TUNING_TOP", "ComponentTuning", "TuningClassifier", "Tunings", "check_belongs", "compare", "compute_tunings",
           "cosine_matrix", "example_columns", "label_name", "label_names", "method_row", "nonzero_counts", "open_store_for",
           "similarity_score", "split_map", "top_examples", "top_indices", "tuning_classifier", "tunings"]
