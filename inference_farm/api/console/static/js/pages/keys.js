// The Keys page.
import { h } from "../dom.js";

export default {
  title: "Keys",
  needs: "keys:admin",
  mount(root) {
    root.append(h("section.card", {}, h("h1", { text: "Keys" })));
    return null;
  },
};
