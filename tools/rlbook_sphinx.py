"""Sphinx tweaks for the rlbook API pages (loaded through ``_config.yml``'s ``local_extensions``).

Napoleon reads the first line of an attribute's docstring as ``type: description`` whenever it
holds a colon, so a dataclass field documented as ``Discount (1.0: plain sum).`` would show
"Discount (1.0" as its type. Our field docstrings never carry types (the annotations do), so an
empty reST comment (``..`` and a blank line) is put first before napoleon runs: napoleon takes the
comment for the "type-less" first line and passes the real text through as prose.
"""


def _untype_attribute_docstrings(app, what, name, obj, options, lines):
    if what == "attribute" and lines and ":" in lines[0]:
        lines[:0] = ["..", ""]


def setup(app):
    # napoleon processes docstrings at the default priority (500); run before it
    app.connect("autodoc-process-docstring", _untype_attribute_docstrings, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
