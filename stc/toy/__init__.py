"""A toy Video-LLM for measuring accuracy offline: synthetic shape-and-colour video QA
(`stc.toy.data`) and a small LLaVA-OneVision of the real token geometry trained on it from a
seed (`stc.toy.train`, which writes the checkpoint, its loss curve and its held-out accuracy).

Work in progress: a 15-minute run on this project's 2-core CPU machine has not left chance
level (the model learns to answer in the right format, then always the same letter), so no
checkpoint is committed yet; see README.md, "Evaluation".
"""
