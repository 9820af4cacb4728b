"""Serving: the one path from uint8 images to class maps, and everything that runs it.

``graph`` builds that path (the training geometry and preprocessing, the network in
float32, the way back to the image's size); ``export`` writes it as a SavedModel;
``client`` loads one (or one of its converted files) for ``predict`` and ``evaluate``;
``encoded`` decodes PNG/JPEG bytes in the graph; ``tiling`` segments big images in tiles;
``runtimes`` converts to TFLite and ONNX; ``lite`` runs those files without TensorFlow.

Serving imports neither :mod:`tfseg.training` nor the dataset sources: a SavedModel and
this package are all that predicting needs.
"""
