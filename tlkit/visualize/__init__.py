"""What a layer responds to: its strongest activations projected back to pixels.

Zeiler & Fergus 2014's deconvnet and Springenberg et al. 2015's guided backpropagation, as the
backward pass of a copy of the model whose ReLUs have a modified gradient
(:mod:`tlkit.visualize.rules`); the search for the strongest activations, their receptive fields
and the projections in :mod:`tlkit.visualize.project`; the picture in :mod:`tlkit.visualize.grid`.
"""
