"""No screen or widget of ours hides a Textual method or property by accident.

Two did: `ChatScreen.set_timer` (our /timer worker) replaced `Widget.set_timer`, which Textual itself
calls, and `ChatList.visible()` replaced the `visible` property that layout reads. Overriding on
purpose is fine: handlers, watchers, actions, class settings and the few methods below.
"""

import importlib
import inspect
import pkgutil

from textual.dom import DOMNode

import melo_tui

INTENDED = {
    "compose", "render", "render_line", "get_content_width", "get_content_height", "notify",
    "can_focus", "can_focus_children", "action_quit", "action_scroll_up", "watch_scroll_y",
}
PREFIXES = ("on_", "_on_", "watch_", "validate_", "compute_", "__")
# what Textual's metaclass and decorators write into every subclass
GENERATED = {
    "_computes", "_css_type_name", "_css_type_names", "_inherit_bindings", "_inherit_component_classes",
    "_inherit_css", "_merged_bindings", "_reactives", "_decorated_handlers",
}


def _our_node_classes() -> list[type[DOMNode]]:
    classes: dict[str, type[DOMNode]] = {}
    for info in pkgutil.walk_packages(melo_tui.__path__, "melo_tui."):
        if info.name.endswith(".main"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, DOMNode) and obj.__module__.startswith("melo_tui."):
                classes[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(classes.values())


def test_our_screens_and_widgets_do_not_shadow_textual() -> None:
    classes = _our_node_classes()
    assert len(classes) > 15  # the walk found the app, the screens and the widgets
    clashes = []
    for cls in classes:
        textual_bases = [b for b in cls.__mro__ if b.__module__.startswith("textual.")]
        for name in vars(cls):
            if name in INTENDED or name in GENERATED or name.startswith(PREFIXES) or name.isupper():
                continue
            if any(name in vars(base) for base in textual_bases):
                clashes.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    assert clashes == []
