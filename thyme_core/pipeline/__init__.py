"""The pipeline's decisions, apart from how stages are run (dispatched to a pool or in-process).

    stages.py   stage keys (input versions + config + code version), stage results recorded in the store,
                and the one check "is this stage done" that dispatch and in-process runs share
"""
