// The Jobs page.
import { h } from "../dom.js";

export default {
  title: "Jobs",
  needs: "jobs",
  mount(root) {
    root.append(h("section.card", {}, h("h1", { text: "Jobs" })));
    return null;
  },
};
