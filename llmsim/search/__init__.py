"""Configuration search (``llmsim search SPEC.yaml``): analytic screen of every candidate replica
configuration, allocation by an integer program (pulp/CBC), and a DES check of the best allocations with
goodput by bisection on the rate. Modules: ``spec`` (the YAML), ``screen``, ``ilp`` (the only pulp
importer), ``verify``, ``report``, ``run`` (the resumable driver)."""
