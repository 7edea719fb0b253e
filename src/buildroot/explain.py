#!/usr/bin/env python3
"""Explain why Buildroot symbols did not get the value a defconfig asked for.

Usage: explain.py <buildroot-dir> <output-dir> SYMBOL=VALUE...
Loads Buildroot's Config.in with kconfiglib (the same environment Buildroot's make gives
its kconfig), reads <output-dir>/.config, and prints one JSON object per symbol:
{"symbol", "wanted", "got", "exists", "reasons": [...]}.
"""
import json
import os
import re
import sys

import kconfiglib


def expr_parts(expr):
    """Split an expression on top-level '&&' into its operands."""
    if isinstance(expr, tuple) and expr[0] == kconfiglib.AND:
        return expr_parts(expr[1]) + expr_parts(expr[2])
    return [expr]


def value_name(v):
    return {0: "n", 1: "m", 2: "y"}.get(v, str(v))


def symbols_in(expr):
    out = []
    for item in kconfiglib.expr_items(expr):
        if isinstance(item, kconfiglib.Symbol) and not item.is_constant:
            out.append(item)
    return out


def describe(expr, kconf):
    if isinstance(expr, kconfiglib.Choice):
        deps = [describe(p, kconf) for p in expr_parts(expr.direct_dep) if kconfiglib.expr_value(p) == 0]
        return "a choice that is unavailable" + (": it depends on " + "; ".join(deps) if deps else "")
    text = kconfiglib.expr_str(expr)
    values = ", ".join(
        "%s=%s" % (s.name, s.str_value or "n") for s in symbols_in(expr))
    return "%s (%s)" % (text, values) if values else text


def main():
    topdir, outdir = sys.argv[1], sys.argv[2]
    wanted = [a.split("=", 1) for a in sys.argv[3:]]
    # Buildroot writes symbols without the kernel's CONFIG_ prefix.
    os.environ["CONFIG_"] = ""
    os.environ.setdefault("srctree", topdir)
    os.environ["BASE_DIR"] = outdir
    os.environ["BR2_BASE_DIR"] = outdir
    os.environ.setdefault("BR2_DEFCONFIG", "")
    os.environ.setdefault("BR2_VERSION_FULL", "")
    os.environ.setdefault("HOSTARCH", os.uname().machine)
    os.environ.setdefault("HOST_GCC_VERSION", "12")
    os.environ.setdefault("BR2_HIDE_SECONDARY_TARGET_OPTIONS", "")
    os.environ.setdefault("SKIP_LEGACY", "")
    paths = os.path.join(outdir, ".br2-external.in.paths")
    if os.path.exists(paths):
        with open(paths) as f:
            text = f.read()
        for name, value in re.findall(r'config (BR2_EXTERNAL_\w+_PATH)\s+string\s+default "([^"]*)"', text):
            os.environ[name] = value
    os.chdir(topdir)
    kconf = kconfiglib.Kconfig("Config.in", warn=False, warn_to_stderr=False)
    kconf.load_config(os.path.join(outdir, ".config"), replace=True)
    for name, want in wanted:
        sym = kconf.syms.get(name)
        result = {"symbol": name, "wanted": want, "exists": bool(sym and sym.nodes), "reasons": []}
        if not result["exists"]:
            result["got"] = None
            result["reasons"].append("no such symbol in this Buildroot release")
            print(json.dumps(result))
            continue
        result["got"] = sym.str_value
        reasons = result["reasons"]
        if want != "n":
            for part in expr_parts(sym.direct_dep):
                if kconfiglib.expr_value(part) == 0:
                    reasons.append("depends on " + describe(part, kconf))
            if sym.choice is not None and sym.choice.selection is not sym and sym.direct_dep and kconfiglib.expr_value(sym.direct_dep):
                sel = sym.choice.selection
                reasons.append("another choice is selected: %s" % (sel.name if sel else "none"))
            if not any(node.prompt for node in sym.nodes) and not reasons:
                reasons.append("has no prompt: it can only be selected by other options")
            if not reasons and sym.visibility == 0:
                for node in sym.nodes:
                    if node.prompt and kconfiglib.expr_value(node.prompt[1]) == 0:
                        reasons.append("prompt hidden: " + describe(node.prompt[1], kconf))
            if not reasons and sym.type in (kconfiglib.STRING, kconfiglib.INT, kconfiglib.HEX):
                ranges = [r for r in sym.ranges if kconfiglib.expr_value(r[2])]
                for low, high, _ in ranges:
                    reasons.append("must be within %s..%s" % (low.str_value, high.str_value))
        else:
            if kconfiglib.expr_value(sym.rev_dep):
                for part in re.split(r"\s*\|\|\s*", kconfiglib.expr_str(sym.rev_dep)):
                    reasons.append("selected by " + part)
            if sym.choice is not None:
                reasons.append("it is part of a choice; select another option of the choice instead")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
