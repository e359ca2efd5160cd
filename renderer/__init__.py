"""unsup3dmm.renderer: a differentiable deferred-shading mesh renderer.

Pipeline (see render.py): camera -> visibility (rasterisation, no gradient)
-> vertex normals -> differentiable barycentrics -> attribute interpolation
-> Phong shading -> compositing.  Two backends give the same results: "op"
(compiled C++ kernels, CPU) and "tf" (TensorFlow ops, any device); "auto"
picks.

The main entry points live in the ``render`` module (the package attribute
``render`` is that module, not the function)::

    from unsup3dmm.renderer import render as render_lib
    result = render_lib.render(vertices, colors, triangles, poses, lights,
                               config)
"""
from unsup3dmm.renderer.barycentrics import compute_barycentrics
from unsup3dmm.renderer.barycentrics import interpolate
from unsup3dmm.renderer.camera import Camera
from unsup3dmm.renderer.camera import camera_space_vertices
from unsup3dmm.renderer.camera import clip_space_vertices
from unsup3dmm.renderer.camera import frontal_poses
from unsup3dmm.renderer.camera import look_at_matrix
from unsup3dmm.renderer.camera import perspective_matrix
from unsup3dmm.renderer.camera import Poses
from unsup3dmm.renderer.camera import project_to_clip
from unsup3dmm.renderer.camera import sample_poses
from unsup3dmm.renderer.config import RendererConfig
from unsup3dmm.renderer.lighting import kelvin_to_rgb
from unsup3dmm.renderer.lighting import light_color
from unsup3dmm.renderer.lighting import Lights
from unsup3dmm.renderer.lighting import sample_lights
from unsup3dmm.renderer.lighting import white_balance
from unsup3dmm.renderer.rasterize_op import OpNotAvailableError
from unsup3dmm.renderer.render import Framebuffer
from unsup3dmm.renderer.render import render_coefficients
from unsup3dmm.renderer.render import RenderResult
from unsup3dmm.renderer.render import resolve_backend
from unsup3dmm.renderer.render import sample_backgrounds
from unsup3dmm.renderer.shading import deferred_shading
from unsup3dmm.renderer.shading import Material
from unsup3dmm.renderer.shading import phong_shade
from unsup3dmm.renderer.shading import vertex_normals
from unsup3dmm.renderer.visibility import rasterize
from unsup3dmm.renderer.visibility import Visibility
