"""DICOM in (PET/CT series to the autoPET layout, PET in SUV) and DICOM SEG out (a prediction over its PET).

``series`` finds and stacks series (geometry from the DICOM attributes), ``suv`` converts PET to SUV body
weight or says exactly why it cannot, ``importer`` turns a PACS export into cases, ``seg`` writes and reads
DICOM SEG through highdicom. docs/data.md shows the path from the scanner to a model and back to the viewer.
"""
from clips.data.dicom.importer import import_dicom
from clips.data.dicom.seg import write_dicom_seg

__all__ = ["import_dicom", "write_dicom_seg"]
