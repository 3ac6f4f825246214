"""Where results go, with one set of naming and overwriting rules for every command.

output_file.py:   OutputFile, one file written as a whole (stdout, --out, .npy, an export);
output_folder.py: OutputFolder, per-image files (YOLO txt, drawn images, mask PNGs), and run folders;
records.py:       record writers on a text stream (jsonl, csv) and Tee;
plan.py:          PredictionOutputs, everything one predict run writes, and the rule that no
                  output is also an input of the same run (checked before any work).

Only core modules (errors, console) are imported here: tasks build their
writers on these classes, and engine runs them.
"""
