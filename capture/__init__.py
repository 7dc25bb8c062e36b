"""Frame sources, recording and synchronization: the ground floor of the pipeline (imports no other stage).

Also home of the small file and configuration helpers every stage shares (atomic writes, typed configs).
"""
