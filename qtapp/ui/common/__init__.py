"""What every page uses: the app context, the adapters from jobs and background calls to Qt
signals, the GUI-thread garbage collector, theme, banner and live plots."""
