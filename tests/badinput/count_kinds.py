"""Count the hostile cases of tests/badinput by the kinds of issue 17.

    PYTHONPATH=. python tests/badinput/count_kinds.py [-v]

A case is one collected test (each parameter is a case), from
`pytest --collect-only -q tests/badinput`. Its kind is the first rule below whose
pattern matches "file::name[param]"; cases that predate the kinds (bad data,
annotations, images, checkpoints, recipes, fuzzing, no network) are "earlier rounds". The rules
read test names, so a new test lands where its name says; -v lists each case.
"""
from __future__ import annotations

import collections
import re
import subprocess
import sys

KINDS = [
    # (kind, pattern) -- first match wins
    ("signals and exactness", r"test_stop_signals|test_killed_runs|stopped|synth_killed"),
    ("writing over what the user has", r"test_output_rule|test_outputs|test_run_start|synth_into|synth_json|"
                                       r"older_synth|plots_dir|run_directory|never_writes_over"),
    ("hanging on small inputs", r"alias|recursive|workers|symlink|fifo|loop|non_regular_file_named"),
    ("reading outside what was named", r"escaping|outside_the_root|stored_root|data_root_wins|yolo_path_key|"
                                       r"says_nothing_changed"),
    ("resources", r"test_limits|tampered|keys_that_must_agree|weights_do_not_fit|larger_than_memory|"
                  r"larger_than_its_image|far_larger|budget|image_size_is_bounded"),
    ("exit codes and messages", r"test_exit_codes_and_text|test_full_disk|test_named_files|full_disk|escapes|"
                                r"control_characters"),
    ("earlier rounds (bad data, annotations, images, checkpoints, recipes, fuzzing, network)", r"."),
]


def collected() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/badinput"], capture_output=True, text=True, check=True).stdout
    return [line.removeprefix("tests/badinput/") for line in out.splitlines() if "::" in line]


def kind_of(case: str) -> str:
    return next(kind for kind, pattern in KINDS if re.search(pattern, case))


def main() -> None:
    cases = collected()
    by_kind = collections.defaultdict(list)
    for case in cases:
        by_kind[kind_of(case)].append(case)
    for kind, _ in KINDS:
        functions = {c.split("[")[0] for c in by_kind[kind]}
        print(f"{len(by_kind[kind]):4d} cases ({len(functions):3d} tests)  {kind}")
        if "-v" in sys.argv:
            for case in by_kind[kind]:
                print(f"         {case}")
    print(f"{len(cases):4d} cases in all")


if __name__ == "__main__":
    main()
