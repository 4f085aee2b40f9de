"""evaluate: score the test jets with the exported network; ROC, rejections, plots."""
