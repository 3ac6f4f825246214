"""Annotation formats, each parsed once into neutral records that every task adapts.

Modules: ``coco`` (instances json: boxes and polygons/RLE), ``voc`` (xml boxes
and the SegmentationClass layout, ImageSets id lists), ``yolo`` (Ultralytics
data yaml and txt labels), ``masks`` (image/mask folder pairs, index masks,
value tables). Shared: ``records`` (what a reader returns), ``issues`` (the
bad-annotation policy and its report), ``paths`` (the rule that keeps file
names inside their root), ``files`` (json/yaml/text/image-header reading),
``boxes`` (box validation), ``options`` (path options of ``data.options``).

Conventions, the same in every module:

* **Sizes are (height, width)**: ``AnnotatedImage.height`` / ``.width``,
  ``files.image_size`` returns ``(h, w)``, and functions take ``height``
  before ``width``. Sizes are of the image as displayed, i.e. after its EXIF
  rotation. Messages print ``WxH`` as image viewers do.
* **Boxes** are float32 ``[K, 4]`` pixel ``xyxy`` in continuous 0-based
  coordinates: the image spans [0, W] x [0, H], and a box covering it all is
  ``(0, 0, W, H)`` (COCO's and albumentations' 'pascal_voc' convention).
* **Labels** are int64 indices into ``AnnotatedSet.classes``;
  ``AnnotatedSet.category_ids[k]`` is the file's own id of class k (COCO's
  1..90 with gaps), so results can be written back with the ids users know.
* **Bad annotations** follow one policy (``issues``): 'skip' counts, warns
  and drops (or clips) the bad entry; 'error' raises ``DataError`` at the
  first one, one line naming the file and the entry.
* **File names** read from an annotation or an id list are resolved inside
  their root (``paths.inside``); '..' escapes and absolute names are
  ``unsafe_path`` problems.

Nothing here knows about a task: readers return records, the tasks turn them
into what their datasets need (``tasks/detect/formats.py``,
``tasks/segment/formats.py``).
"""
