"""Genome I/O: FASTA (pyfaidx), BED regions and bigWig tracks (pyBigWig)."""
