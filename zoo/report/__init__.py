"""`zoo report`: one self-contained HTML page over every artifact under out_dir.

``grid`` judges each artifact and lays out the variant x target capability grid, ``plots`` draws the
figures as inline SVG, ``html`` assembles the page. Rows come from ``zoo.results``; nothing here reads
a manifest itself.
"""
