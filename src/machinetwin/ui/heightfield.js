// The stock as a height field: a top surface over an nx x ny grid of cell centres
// plus four side walls down to the bottom, updated in place as the part is cut.
import { THREE } from "nicegui-scene";

function build(nx, ny, x0, y0, dx, dy, bottom, heights, top) {
  const positions = [];
  const indices = [];
  const vertex = (i, j, z) => {
    positions.push(x0 + (i + 0.5) * dx, y0 + (j + 0.5) * dy, z);
    return positions.length / 3 - 1;
  };
  const flat = heights.length === 0; // no heights yet: the blank's flat top
  for (let i = 0; i < nx; ++i) for (let j = 0; j < ny; ++j) vertex(i, j, flat ? top : heights[i * ny + j]);
  for (let i = 0; i < nx - 1; ++i) {
    for (let j = 0; j < ny - 1; ++j) {
      const a = i * ny + j, b = (i + 1) * ny + j, c = (i + 1) * ny + j + 1, d = i * ny + j + 1;
      indices.push(a, b, c, a, c, d);
    }
  }
  // walls: pairs of (top vertex, bottom vertex) along the rim
  const wall = (rim) => {
    for (let k = 0; k < rim.length - 1; ++k) {
      const [i0, j0] = rim[k], [i1, j1] = rim[k + 1];
      const t0 = i0 * ny + j0, t1 = i1 * ny + j1;
      const b0 = vertex(i0, j0, bottom), b1 = vertex(i1, j1, bottom);
      indices.push(t0, b0, b1, t0, b1, t1);
    }
  };
  const rim = [];
  for (let i = 0; i < nx; ++i) rim.push([i, 0]);
  for (let j = 1; j < ny; ++j) rim.push([nx - 1, j]);
  for (let i = nx - 2; i >= 0; --i) rim.push([i, ny - 1]);
  for (let j = ny - 2; j >= 0; --j) rim.push([0, j]);
  wall(rim);
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.Float32BufferAttribute(positions, 3));
  geometry.setIndex(indices);
  geometry.computeVertexNormals();
  return geometry;
}

export default class HeightField {
  create_mesh(nx, ny, x0, y0, dx, dy, bottom, heights, color, top) {
    this.args = [nx, ny, x0, y0, dx, dy, bottom];
    this.top = top;
    const material = new THREE.MeshPhongMaterial({ color: color, side: THREE.DoubleSide, transparent: true });
    this.mesh = new THREE.Mesh(build(...this.args, heights, top), material);
    return this.mesh;
  }
  set_heights(heights) {
    const geometry = build(...this.args, heights, this.top);
    this.mesh.geometry.dispose();
    this.mesh.geometry = geometry;
  }
  apply_material({ color, opacity }) {
    if (color) this.mesh.material.color.set(color);
    this.mesh.material.opacity = opacity;
  }
}
