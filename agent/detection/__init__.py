"""Detection: regions of interest that follow the camera.

`registration` finds how the current view sits against the camera's reference view (built from
`pyramid`, `phase_correlation` and `lucas_kanade`), `drift` smooths that over time into the
adjustment in force and the camera-moved / view-lost states, and `roi_geometry` moves ROI
polygons by an adjustment and cuts their crops and masks. `luma` reads a decoded frame's luma.
"""
