// The Models page.
import { h } from "../dom.js";

export default {
  title: "Models",
  needs: "models:read",
  mount(root) {
    root.append(h("section.card", {}, h("h1", { text: "Models" })));
    return null;
  },
};
