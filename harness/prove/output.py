"""A proof's output: pure functions of a ``ProofResult`` (the table, the statement, the mail block, JSON)."""

from __future__ import annotations

import textwrap
from dataclasses import asdict

import harness.prove.trials as trials
from harness.prove.driver import BASE, MERGED, PATCHED, KernelInfo, ProofResult, ProofVerdict, Tally
from harness.stats import clopper_pearson, upper_bound


def fraction_text(fraction: float) -> str:
    """0.1 -> "1/10"; 0.3 -> "0.3"."""
    inv = round(1 / fraction)
    return f"1/{inv}" if inv > 1 and abs(1 / fraction - inv) < 1e-6 else f"{fraction:g}"


def _rate(t: Tally) -> str:
    if not t.runs:
        return "-"
    lo, hi = clopper_pearson(t.hits, t.runs, 0.95)
    return f"{t.hits / t.runs:.2f} [{lo:.2f}, {hi:.2f}]"


def _others(t: Tally) -> str:
    return "; ".join(f"{title} (x{n})" for title, n in t.others.most_common()) or "-"


def table(result: ProofResult) -> str:
    """Kernel, runs, hits, rate with its 95% Clopper-Pearson interval, median time-to-hit, other reports."""
    proof = result.proof
    trial = "full" if proof.trial is None else f"{proof.trial:g} s"
    rows = [("", "kernel", "trial", "runs", "hits", "rate [95% CI]", "median time-to-hit", "other reports")]
    sides = [("base check", result.info.base, proof.check, "full")] if proof.check.attempts else []
    sides += [(side, kernel, proof.tallies[side], trial)
              for side, kernel in ((BASE, result.info.base), (PATCHED, result.info.patched))]
    for side, kernel, t, length in sides:
        tth = t.median_time_to_hit
        rows.append((
            side,
            kernel.name,
            length,
            f"{t.runs}" + (f" (+{t.failed} failed)" if t.failed else ""),
            str(t.hits),
            _rate(t),
            "-" if tth is None else f"{tth:.2f} s",
            _others(t),
        ))
    if proof.trial is None and not proof.check.attempts:  # every run raced the full length: no column for it
        rows = [row[:2] + row[3:] for row in rows]
    return trials.columns(rows)


def statement(result: ProofResult, *, ascii: bool = False) -> str:
    """The answer in words, with the figures it rests on."""
    ge = ">=" if ascii else "≥"
    pol, rule, proof = result.info.policy, result.info.policy.rule, result.proof
    b, p = proof.base, proof.patched
    conf = f"{pol.confidence:g}"
    unit = proof.unit
    if result.verdict is ProofVerdict.NO_CHANGE:
        return f"Nothing to run: the patch changes no code this kernel runs ({result.reason})."
    if result.verdict is ProofVerdict.NOT_FIXED:
        return (f"The patched kernel still fails: the expected outcome showed in {p.hits} of {p.runs} patched "
                f"{unit}s, against {b.hits} of {b.runs} base {unit}s{_check_text(proof)}.")
    if result.verdict is ProofVerdict.BASE_CLEAN:
        c = proof.checking
        bound = upper_bound(0, c.runs, pol.confidence) if c.runs else 1.0
        return (f"Nothing to prove on this base: it never showed the expected outcome in {c.runs} runs "
                f"(its rate is below {bound:.3f} with probability {conf}).")
    floor = rule.base_floor(b.hits, b.runs)
    basis = (f"(base: {b.hits} hits in {b.runs} {unit}s, its rate {ge} {floor:.3f} with probability "
             f"{1 - rule.alpha_base:g})")
    if proof.trial is None:
        claim = (f"Had the patched kernel still failed at {ge} {fraction_text(pol.fraction)} of the base rate, "
                 f"{p.runs} clean runs would have shown it with probability {ge} {conf} {basis}.")
    else:
        claim = (f"In {proof.trial:g} s trials: had the patched kernel still failed in {ge} "
                 f"{fraction_text(pol.fraction)} as many trials as the base, {p.runs} clean trials would have shown "
                 f"it with probability {ge} {conf} {basis}.")
    if result.verdict is ProofVerdict.FIXED:
        return claim + _cut_text(result, ge) + _boots_text(result)
    if result.verdict is ProofVerdict.TRADED:
        return (f"The expected outcome is gone, traded for another report: {'; '.join(proof.traded())}. "
                f"{claim}{_cut_text(result, ge)}{_boots_text(result)}")
    merged = result.info.context.get(MERGED)
    if merged and merged.get("failed"):  # a fixed-sample plan: more trials are not the answer
        return (f"Not settled ({result.reason}). The plan's verdict needs every shard's planned trials: resume the "
                f"shard named (harness prove --resume SHARD_FOLDER) or run it again (--shard I/N --from-check), then "
                f"merge again; the other shards' {p.runs} clean patched {unit}s are in {basis}.")
    if merged:
        return (f"Not settled ({result.reason}): the base hit fewer of its trials than the plan counted on; plan "
                f"again from a new base check (--plan --shards N) {basis}.")
    more = proof.more_runs()
    if more is None:
        return f"Not settled ({result.reason}): the base has not shown the expected outcome yet."
    return (f"Not settled ({result.reason}): {p.runs} clean patched {unit}s so far; about {more} more clean {unit}s "
            f"would settle it at the base's current bound {basis}.")


def _check_text(proof) -> str:
    c = proof.check
    return f" (and {c.hits} of {c.runs} base check runs of the full race)" if c.runs else ""


def hazard(result: ProofResult) -> dict | None:
    """The claim per second of racing: the base's rate bound and the cut of it the trials would have caught."""
    proof, rule = result.proof, result.info.policy.rule
    racing = proof.racing
    if not racing.hits or not proof.base.hits:
        return None
    per_second = trials.rate_floor(racing.hits, racing.seconds, rule.alpha_base)
    length = proof.trial if proof.trial is not None else (proof.full or result.info.race)
    if length is None:
        return None
    cut = trials.hazard_cut(rule, rule.base_floor(proof.base.hits, proof.base.runs), per_second, length)
    return {"hits": racing.hits, "racing_seconds": round(racing.seconds, 2), "per_second_floor": round(per_second, 4),
            "trial": length, "cut": None if cut is None else round(cut, 1)}


def _cut_text(result: ProofResult, ge: str) -> str:
    h = hazard(result)
    if h is None or h["cut"] is None:
        return ""
    return (f" Per second of racing, the base hit at {ge} {h['per_second_floor']:.2f} a second ({h['hits']} hits in "
            f"{h['racing_seconds']:.1f} s of racing, probability {1 - result.info.policy.rule.alpha_base:g}), so a patch "
            f"that only cut that rate by up to {h['cut']:.0f}x would still have failed often enough in "
            f"{h['trial']:g} s runs to be caught.")


def per_boot(t: Tally) -> dict[int, tuple[int, int]]:
    """Saved boot -> (hits, runs) of a side's counted runs (the snapshot backend spreads runs over boots)."""
    out: dict[int, list[int]] = {}
    for obs in t.observations:
        if obs.exposure and obs.boot is not None:
            cell = out.setdefault(obs.boot, [0, 0])
            cell[0] += obs.hit
            cell[1] += 1
    return {boot: (hits, runs) for boot, (hits, runs) in sorted(out.items())}


def boots_disagree(t: Tally) -> float | None:
    """p-value of "every boot has the same hit rate" (a G-test over the boots' hits and misses), or None
    where it cannot be asked (one boot, or no hit or no miss at all)."""
    table = [(h, r - h) for h, r in per_boot(t).values() if r]
    if len(table) < 2 or not sum(h for h, _ in table) or not sum(m for _, m in table):
        return None
    from scipy.stats import chi2_contingency  # start-up cost: scipy takes 0.3-1 s, only proofs with boots ask

    return float(chi2_contingency(table, lambda_="log-likelihood").pvalue)


def _boots_text(result: ProofResult) -> str:
    parts = []
    for side in (BASE, PATCHED):
        t = result.proof.tallies[side]
        boots = per_boot(t)
        if len(boots) < 2:
            continue
        shown = ", ".join(f"boot {b} {h}/{r}" for b, (h, r) in boots.items())
        p = boots_disagree(t)
        verdict = "" if p is None else (f"; they disagree beyond chance (p = {p:.3f})" if p < 0.05
                                        else f"; no disagreement beyond chance (p = {p:.2f})")
        parts.append(f"{side.capitalize()} hits per saved boot: {shown}{verdict}.")
    return (" " + " ".join(parts)) if parts else ""


def _kernel_line(k: KernelInfo) -> str:
    return k.name + (f", Linux {k.version}" if k.version else "") + (f" ({k.source})" if k.source else "")


def mail_block(result: ProofResult) -> str:
    """Plain text to paste into a mailing-list reply: what was run, on what, and the answer (no tags)."""
    info, pol = result.info, result.info.policy
    lines = [f"Reproducer: {info.reproducer} (kernel-repro-harness: harness prove)", f"Base:       {_kernel_line(info.base)}"]
    if info.patches:
        lines.append("Patched:    the base with")
        for patch in info.patches:
            lines.append(f"              {'revert of ' if patch.revert else ''}{patch.subject}")
            lines.append(f"                sha256 {patch.sha256}")
    else:
        lines.append(f"Patched:    {_kernel_line(info.patched)}")
    lines += [
        f"Runs:       {_runs_line(result)}",
        f"Result:     {result.verdict.value} (confidence {pol.confidence:g}, fraction {fraction_text(pol.fraction)})",
        "",
        *textwrap.wrap(statement(result, ascii=True), 72),
    ]
    return "\n".join(lines)


def _runs_line(result: ProofResult) -> str:
    proof = result.proof
    b, p, c = proof.base, proof.patched, proof.check
    if proof.trial is None:
        return f"base {b.runs} runs, {b.hits} hits; patched {p.runs} runs, {p.hits} hits"
    return (f"base {b.runs} trials, {b.hits} hits; patched {p.runs} trials, {p.hits} hits ({proof.trial:g} s "
            f"trials, after a base check of {c.runs} full runs with {c.hits} hits)")


def _side_json(t: Tally, kernel: KernelInfo) -> dict:
    lo, hi = clopper_pearson(t.hits, t.runs, 0.95) if t.runs else (0.0, 1.0)
    return {
        "kernel": asdict(kernel),
        "runs": t.runs,
        "hits": t.hits,
        "failed": t.failed,
        "rate": round(t.hits / t.runs, 4) if t.runs else None,
        "ci95": [round(lo, 4), round(hi, 4)],
        "median_time_to_hit": t.median_time_to_hit,
        "reproducer_seconds": round(t.seconds, 2),
        "other_reports": dict(t.others),
        "folders": list(t.folders),
        "boots": {str(b): {"hits": h, "runs": r} for b, (h, r) in per_boot(t).items()},
        "boots_disagree_p": boots_disagree(t),
    }


def to_json(result: ProofResult) -> dict:
    """One object: verdict, confidence, base/patched runs and hits, the statement, and the rest."""
    info, proof, rule = result.info, result.proof, result.info.policy.rule
    settled_runs = result.verdict in (ProofVerdict.FIXED, ProofVerdict.TRADED, ProofVerdict.INCONCLUSIVE)
    achieved = rule.achieved(proof.base.hits, proof.base.runs, proof.patched.runs) if settled_runs else None
    return {
        "verdict": result.verdict.value,
        "reason": result.reason,
        "confidence": info.policy.confidence,
        "fraction": info.policy.fraction,
        "achieved_confidence": None if achieved is None else round(achieved, 4),
        "base": _side_json(proof.base, info.base),
        "patched": _side_json(proof.patched, info.patched),
        "check": _side_json(proof.check, info.base) if proof.check.attempts else None,
        "trial": proof.choice.to_dict() if proof.choice is not None else None,
        "unit": proof.unit,
        "hazard": hazard(result) if result.verdict in (ProofVerdict.FIXED, ProofVerdict.TRADED) else None,
        "statement": statement(result),
        "more_runs": (proof.more_runs() if result.verdict is ProofVerdict.INCONCLUSIVE
                      and not info.context.get(MERGED) else None),
        "traded": proof.traded() if result.verdict is ProofVerdict.TRADED else [],
        "reproducer": info.reproducer,
        "patches": [asdict(p) for p in info.patches],
        "policy": asdict(info.policy),
        "folder": None if result.folder is None else str(result.folder),
        "exit_code": int(result.exit_code),
    }
