"""Run a model once and see every tensor operation with the modules it ran inside.

A summary row, a receptive field or a feature map belongs to a *module* (a
layer, a ResNet block, an Inception module), but the operations that matter
are not all module calls: residual sums and concatenations are plain
functions. So the trace works at the level of torch functions
(`TorchFunctionMode` sees `conv2d`, `max_pool2d`, `cat`, `+`, ...) and tags
each one with the chain of modules it runs in:

- eager modules: forward pre/post hooks keep a stack of the modules running;
- fx feature extractors (the torchvision backbones): the graph is flat and its
  blocks are never called, so it is run node by node (`fx.Interpreter`) and
  each node's modules come from `node.meta["module_scopes"]`, written when
  the backbone was traced (backbones/torchvision_models.py).

A scope is (qualified module name, call number, class name); the call number
tells apart the two calls of a module used twice (the ReLU of a ResNet
BasicBlock). The root module is not a scope: it is the whole model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves


@dataclass(frozen=True)
class Scope:
    name: str
    call: int
    kind: str  # the module's class name

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.call)


@dataclass
class Op:
    """One torch function call, as the trace saw it."""
    func: Callable
    args: tuple
    kwargs: dict
    inputs: list[torch.Tensor]   # tensor arguments, in order (nested lists flattened)
    outputs: list[torch.Tensor]  # tensor results (a tuple flattened)
    scopes: tuple[Scope, ...]    # outermost first

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", str(self.func)).lstrip("_")


OpCallback = Callable[[Op], None]


class _Mode(TorchFunctionMode):
    def __init__(self, trace: "LayerTrace"):
        super().__init__()
        self.trace = trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # Property reads (`x.shape`, `x.device`) and the like are not operations.
        if getattr(func, "__name__", "") == "__get__":
            return out
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if outputs:
            inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            op = Op(func, args, kwargs, inputs, outputs, self.trace.current_scopes())
            for callback in self.trace.callbacks:
                callback(op)
        return out


class _ScopedInterpreter(torch.fx.Interpreter):
    """Runs an fx GraphModule node by node, telling the trace which modules each node belongs to."""

    def __init__(self, module: torch.fx.GraphModule, prefix: str, trace: "LayerTrace"):
        super().__init__(module, garbage_collect_values=False)
        self.prefix, self.trace = prefix, trace

    def run_node(self, n):
        scopes = n.meta.get("module_scopes")
        if scopes is None:
            # A graph traced by another tracer: modules are known by their path only.
            scopes = _path_scopes(str(n.target)) if n.op == "call_module" else ()
        saved = self.trace.fx_scopes
        self.trace.fx_scopes = saved + [(self.prefix + name, kind) for name, kind in scopes]
        try:
            return super().run_node(n)
        finally:
            self.trace.fx_scopes = saved


def _path_scopes(target: str) -> tuple[tuple[str, str], ...]:
    parts = target.split(".")
    return tuple((".".join(parts[: i + 1]), "Module") for i in range(len(parts)))


class LayerTrace:
    """`LayerTrace(model, callbacks).run(x)`: one forward pass, each op reported to every callback."""

    def __init__(self, model: nn.Module, callbacks: list[OpCallback]):
        self.model, self.callbacks = model, callbacks
        self.eager: list[Scope] = []
        self.fx_scopes: list[tuple[str, str]] = []
        self.calls: dict[str, int] = {}

    def current_scopes(self) -> tuple[Scope, ...]:
        chain: dict[str, Scope] = {}
        # Eager scopes first (they hold the call numbers); fx scopes add the blocks
        # that are never called. Ordered by depth: names nest.
        for s in self.eager:
            chain[s.name] = s
        for name, kind in self.fx_scopes:
            if name not in chain:
                chain[name] = Scope(name, 0, kind)
            elif chain[name].kind == "Module" and kind != "Module":
                chain[name] = Scope(name, chain[name].call, kind)
        return tuple(sorted(chain.values(), key=lambda s: s.name.count(".")))

    def run(self, *inputs: Any) -> Any:
        handles, patched = [], []
        for name, module in self.model.named_modules():
            if isinstance(module, torch.fx.GraphModule):
                prefix = f"{name}." if name else ""
                module.forward = _graph_runner(module, prefix, self)
                patched.append(module)
            if not name:
                continue
            handles.append(module.register_forward_pre_hook(self._enter(name, module)))
            handles.append(module.register_forward_hook(self._leave))
        try:
            with _Mode(self):
                return self.model(*inputs)
        finally:
            for h in handles:
                h.remove()
            for module in patched:
                del module.forward
            self.eager.clear()

    def _enter(self, name: str, module: nn.Module):
        kind = type(module).__name__

        def hook(_module, _args):
            call = self.calls.get(name, 0)
            self.calls[name] = call + 1
            self.eager.append(Scope(name, call, kind))

        return hook

    def _leave(self, _module, _args, _out):
        self.eager.pop()


def _graph_runner(module: torch.fx.GraphModule, prefix: str, trace: LayerTrace):
    def forward(*args):
        return _ScopedInterpreter(module, prefix, trace).run(*args)

    return forward
