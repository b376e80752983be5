// The Playground page.
import { h } from "../dom.js";

export default {
  title: "Playground",
  needs: "infer",
  mount(root) {
    root.append(h("section.card", {}, h("h1", { text: "Playground" })));
    return null;
  },
};
