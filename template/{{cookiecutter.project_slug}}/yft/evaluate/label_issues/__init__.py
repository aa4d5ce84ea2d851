"""`invoke label-issues`: find the labels that are probably wrong, ranked for review.

predictions.py  out-of-sample predictions (K-fold finetunes, or a model that did not see the images)
scoring.py      cleanlab's scores, sorted into missing / wrong_class / misplaced / spurious
review.py       the table, the contact sheet, Label Studio and CVAT re-review files, --apply-suggestions
cli.py          the task itself
"""
