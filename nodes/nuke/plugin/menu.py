# hdrlift for Nuke, GUI sessions only: the Nodes toolbar icon and its HdrLift entry.
import hdrlift_nuke.node

hdrlift_nuke.node.add_menus()
