"""Behavioural probes: run one module's forward on meta tensors and read what it does.

``trace`` records aten ops with operand roles, ``run`` synthesises inputs and caches one
probe per module signature, ``norms``, ``gates``, ``extras`` read a trace, ``roles`` reads
what each projection of a block does from its data flow (``role_map``: by module path),
``numeric`` checks a tiny CPU copy of one leaf, ``readings`` is what rules call.
"""
