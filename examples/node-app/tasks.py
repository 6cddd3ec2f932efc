from shipyard.tasks import namespace

ns = namespace()
