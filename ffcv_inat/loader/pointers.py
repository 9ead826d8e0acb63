"""Memory that ffcv's compiled pipelines reach by address: numba freezes the globals and closure
variables a compiled function reads, numpy arrays by value, so a value Python changes later (the
epoch) or memory the code writes (decode buffers, a work counter) is handed to it as an integer
address and reached through these intrinsics.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic


@intrinsic
def load_int64(typingctx, address):
    """The int64 stored at `address` (an integer), read when the compiled code runs."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))
        return builder.load(ptr)

    return types.int64(address), codegen


@intrinsic
def fetch_add(typingctx, address, delta):
    """Atomically add `delta` to the int64 at `address` (an integer); the value before the add."""
    if not (isinstance(address, types.Integer) and isinstance(delta, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))
        value = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", ptr, value, "monotonic")

    return types.int64(address, delta), codegen


@intrinsic
def store_int64(typingctx, address, value):
    """Store `value` as an int64 at `address` (an integer)."""
    if not (isinstance(address, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))
        builder.store(context.cast(builder, args[1], signature.args[1], types.int64), ptr)
        return context.get_dummy_value()

    return types.void(address, value), codegen


@intrinsic
def uint8_pointer(typingctx, address):
    """`address` (an integer) as a uint8 pointer, for numba.carray."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.uint8)))

    return types.CPointer(types.uint8)(address), codegen
