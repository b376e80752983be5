// The Workers page.
import { h } from "../dom.js";

export default {
  title: "Workers",
  needs: "models:read",
  mount(root) {
    root.append(h("section.card", {}, h("h1", { text: "Workers" })));
    return null;
  },
};
