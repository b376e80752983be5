// The Overview page.
import { h } from "../dom.js";

export default {
  title: "Overview",
  needs: null,
  mount(root) {
    root.append(h("section.card", {}, h("h1", { text: "Overview" })));
    return null;
  },
};
