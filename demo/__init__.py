"""``make demo``: the end-to-end rqes story on a sample PDF (see :mod:`demo.run`)."""
