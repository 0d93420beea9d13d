"""The synthetic echocardiography phantom behind ``gdkvm.data.synthetic``.

Modules, from the heart to the files:

- ``shape``: the 3D left-ventricle model (exact volumes, plane cuts, wall thickening);
- ``cycle``: the cardiac cycle (contraction level and valve opening over a beat);
- ``geometry``: probe pose, sector, scan-line and pixel grids;
- ``profiles``: per-frame tables of the LV cut along the long axis;
- ``anatomy``: labels and echogenicity of one view plane (LV, LA, RV, RA, septa, valves, pericardium);
- ``motion``: the inverse tissue deformation that carries scatterers with the tissue;
- ``speckle``: ultrasound image formation (scatterers, PSF, envelope, log compression, scan conversion);
- ``render``: one acquisition, frame by frame;
- ``patient``: random draw of one patient and its three acquisitions;
- ``sequences``: the CAMUS half sequences and the EchoNet video of a patient;
- ``tracing``: EchoNet long-axis + disk-chord tracings;
- ``writers``: deterministic NIfTI, AVI and CSV writers.

docs/phantom.md describes the model.
"""
