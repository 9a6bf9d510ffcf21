// Many line segments in one draw call: the toolpath of a program.
import { THREE } from "nicegui-scene";

export default class Segments {
  create_mesh(points, color) {
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.Float32BufferAttribute(points, 3));
    const material = new THREE.LineBasicMaterial({ color: color, transparent: true });
    this.mesh = new THREE.LineSegments(geometry, material);
    return this.mesh;
  }
  set_points(points) {
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.Float32BufferAttribute(points, 3));
    this.mesh.geometry.dispose();
    this.mesh.geometry = geometry;
  }
  apply_material({ color, opacity }) {
    if (color) this.mesh.material.color.set(color);
    this.mesh.material.opacity = opacity;
  }
}
