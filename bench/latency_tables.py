"""The query_latency benchmark's printed tables, from its JSON-ready result (`bench.query_latency.run`)."""

from __future__ import annotations

from typing import Any

from bench.latency_images import PREVIEW_STAGES
from bench.report import Cell, table


def format_result(result: dict[str, Any]) -> str:
    """One caller against raw + echo, concurrent callers beside the echo, QueryByImage without and with
    previews, goals, and how each store was made."""
    stores = result["stores"]
    notes = [
        "index: the index types asked for, and in brackets the one the store really has where it differs; "
        "flat = auto: auto resolves to flat at this size, the same store measured once",
        *_goal_lines(result),
        *(_build_line(row) for row in stores),
    ]
    return "\n".join(
        [
            _one_caller_table(result),
            _concurrent_table(result),
            _image_table(result),
            _preview_table(result),
            *notes,
        ]
    )


def _one_caller_table(result: dict[str, Any]) -> str:
    server, here = result["server"], result["stores"][-1]["baseline_threads"]
    where = "a child process" if result["placement"] == "process" else "a thread of this process"
    setup = (
        f"k={result['k']}, {result['metric']}, server in {where}; FAISS/torch threads "
        f"{server['rpc_faiss_threads']}/{server['rpc_torch_threads']} in its RPC threads, "
        f"{here['faiss']}/{here['torch']} in the baselines' thread here, {server['precision']}"
    )
    rows = []
    for row in result["stores"]:
        one = row["one_caller"]
        stages = one["server_stages_p50_ms"]
        rows.append(
            [
                *_store_cells(row),
                one["raw"]["p50_ms"],
                one["raw"]["p99_ms"],
                one["echo"]["p50_ms"],
                one["server"]["p50_ms"],
                one["server"]["p99_ms"],
                one["server"]["qps"],
                one["server_engine"]["p50_ms"],
                stages["search"],
                stages["metadata"],
                one["ratio"],
                _yes(one["meets_goal"]),
            ]
        )
    headers = ["store", "index", "raw p50", "raw p99", "echo p50", "server p50", "server p99", "server QPS"]
    headers += ["engine p50", "search", "metadata", "ratio", f"<= {result['goals']['one_caller_ratio_max']}"]
    return table(f"QueryByLatent, 1 caller ({setup}); ms", headers, rows)


def _concurrent_table(result: dict[str, Any]) -> str:
    goals = result["goals"]
    at = goals["qps_goal_at"]
    rows = []
    for row in result["stores"]:
        group = row.get("process_group")
        setups = [("1", row["concurrent"])] + (
            [(str(group["processes"]), group["concurrent"])] if group else []
        )
        for processes, loads in setups:
            for load in loads:
                query, echo = load["query"], load["echo"]
                goal_row = row["n"] == at["n"] and at["index_type"] in row["index_types"]
                meets = load["qps_vs_echo"] >= goals["qps_vs_echo_min"]
                rows.append(
                    [
                        *_store_cells(row),
                        processes,
                        load["callers"],
                        query["queries"],
                        query["p50_ms"],
                        query["p99_ms"],
                        query["qps"],
                        echo["p50_ms"],
                        echo["p99_ms"],
                        echo["qps"],
                        load["qps_vs_echo"],
                        _yes(meets) if goal_row and load["callers"] == at["callers"] else "-",
                    ]
                )
    title = (
        f"QueryByLatent from client processes beside the echo (health Check) from the same processes, "
        f"{result['sizes']['rounds']} interleaved rounds; one server process, and `serve --processes` "
        "(one per core); ms"
    )
    headers = ["store", "index", "processes", "callers", "queries", "p50", "p99", "QPS", "echo p50"]
    headers += ["echo p99", "echo QPS", "QPS / echo", f">= {goals['qps_vs_echo_min']}"]
    return table(title, headers, rows)


def _image_table(result: dict[str, Any]) -> str:
    rows = []
    for row in result["stores"]:
        images = row["image_queries"]
        here, there = images["in_process_stages_p50_ms"], images["server_stages_p50_ms"]
        rows.append(
            [
                *_store_cells(row),
                images["in_process"]["p50_ms"],
                images["in_process"]["p99_ms"],
                images["server"]["p50_ms"],
                images["server"]["p99_ms"],
                *(f"{here[s]:.2f} / {there[s]:.2f}" for s in ("image_decode", "encode", "search")),
                there["metadata"],
                images["ratio"],
                images["in_process_copies_first"]["p50_ms"],
                images["server_copies_first"]["p50_ms"],
                images["copies_first_ratio"],
                images["copies_first_cost_ms"],
                _yes(images["meets_goal"]),
            ]
        )
    first = result["stores"][0]["image_queries"]
    size = result["images"]["size"]
    title = (
        f"QueryByImage without previews against decode + encode + search here ({first['queries']} JPEGs "
        f"{size[0]}x{size[1]}, {result['images']['source']}, {result['precision']}); ms. Ranked by latent "
        "alone, then copies first (the server's default) against the same plus the re-ranking here"
    )
    headers = ["store", "index", "here p50", "here p99", "server p50", "server p99"]
    headers += ["decode here/server", "encode", "search", "metadata", "ratio"]
    headers += ["copies first: here p50", "server p50", "ratio", "server's extra ms"]
    headers += [f"both <= {result['goals']['image_ratio_max']}"]
    return table(title, headers, rows)


def _preview_table(result: dict[str, Any]) -> str:
    rows = []
    for row in result["stores"]:
        medians = row["image_previews"]["median_ms"]
        rows.append(
            [
                *_store_cells(row),
                *(medians[s] for s in PREVIEW_STAGES),
                medians["server_other"],
                medians["total"],
                medians["transport"],
                medians["client"],
            ]
        )
    first = result["stores"][0]["image_previews"]
    title = (
        f"QueryByImage with previews of the {result['k']} matches ({first['queries']} JPEGs), the call's "
        "split; median ms (other: server total - stages; transport: client call - server total)"
    )
    headers = ["store", "index", *PREVIEW_STAGES, "other", "server", "transport", "client"]
    return table(title, headers, rows)


def _goal_lines(result: dict[str, Any]) -> list[str]:
    goals, met = result["goals"], result["goals_met"]
    at = goals["qps_goal_at"]
    return [
        f"goal, 1 caller: server p50 / (raw p50 + echo p50) <= {goals['one_caller_ratio_max']} at every "
        f"size and index type: {_yes(met['one_caller_ratio'])}",
        f"goal, throughput: QPS / echo QPS >= {goals['qps_vs_echo_min']} with {at['callers']} callers at "
        f"{at['n']:,} {at['index_type']}: {_yes(met['qps_vs_echo'])}",
        f"goal, QueryByImage: server p50 / (decode + encode + search here) p50 <= {goals['image_ratio_max']} "
        f"everywhere, by latent and copies first: {_yes(met['image_ratio'])}",
    ]


def _build_line(row: dict[str, Any]) -> str:
    build = row["store"]
    made = f"store {row['n']:,} {' = '.join(row['index_types'])}: "
    if "rebuild_s" in build:
        made += (
            f"copied from the flat store in {build['copy_s']:.0f} s and rebuilt as {build['index_type']} "
            f"({build['vector_kind']}) in {build['rebuild_s']:.0f} s, {build['disk_mb']:.0f} MB"
        )
    else:
        made += (
            f"built in {build['build_s']:.0f} s (upsert {build['upsert_rows_per_s']:,.0f} rows/s, flush "
            f"{build['flush_s']:.1f} s), {build['disk_mb']:.0f} MB"
        )
    return made + (", reused from an earlier run" if build["reused"] else "")


def _store_cells(row: dict[str, Any]) -> list[Cell]:
    asked = row["index_types"]
    kind = row["vector_kind"]
    index = " = ".join(asked) + ("" if kind in asked else f" ({kind})")
    return [f"{row['n']:,}", index]


def _yes(met: bool | None) -> str:
    return "not measured" if met is None else "yes" if met else "no"
