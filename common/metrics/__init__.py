"""Re-ID evaluation (SPEC section 5): ranking metrics, distances, k-reciprocal re-ranking."""
from common.metrics.distance import METRICS, compute_distance, evaluate_features
from common.metrics.ranking import PROTOCOLS, evaluate
from common.metrics.reference import evaluate_loop
from common.metrics.rerank import re_ranking

__all__ = ['evaluate', 'evaluate_features', 'compute_distance', 're_ranking', 'evaluate_loop',
           'PROTOCOLS', 'METRICS']
