"""Solutions to the exercises of chapter 11.

The chapter shows each one in a dropdown, and tests/test_exercises.py
runs each through its check. The code between "# [name]" and
"# [end name]" is what goes in the exercise's answer cell.
"""


# [amdahl]
def my_speedup(serial, workers):
    # time with one worker is 1; the serial part does not shrink
    time_with_workers = serial + (1 - serial) / workers
    return 1 / time_with_workers
# [end amdahl]


# [seqlock]
def my_consistent(before, after):
    written = before > 0  # 0: nothing published yet
    idle = before % 2 == 0  # odd: a write was under way
    return written and idle and before == after
# [end seqlock]
