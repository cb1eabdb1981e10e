"""The answer-quality check: an evaluation set of questions (:mod:`~insightmesh.evaluation.cases`),
scored again with the current prompt, model and retrieval (:mod:`~insightmesh.evaluation.scoring`,
:mod:`~insightmesh.evaluation.run`) by the ``answer_quality_eval`` job (:mod:`~insightmesh.evaluation.job`)
and by ``insightmesh eval``."""
